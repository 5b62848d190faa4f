/* The outermost layer of the jobd binary: checks TMPDIR, then starts the program.

   jobd is a staticx binary (around a PyInstaller one): at each start it unpacks itself into
   TMPDIR and runs from there. Where TMPDIR cannot hold or run programs (noexec, read-only,
   missing, full), staticx says only "Failed to execv() ...". This launcher checks TMPDIR
   first and says in one line what to do; then it writes the staticx program appended to
   this file into TMPDIR/jobd-exe-XXXXXX/ and execs it there (staticx needs a real path to
   itself). The daemon removes that copy as soon as it runs; a lock on .jobd-alive in the
   folder, held by the started process, tells a live run's copy from a killed one's.

   This file: this program, the staticx program, then a trailer: the program's offset
   (8 bytes, little-endian) and the magic "JOBDBIN1". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char MAGIC[8] = {'J', 'O', 'B', 'D', 'B', 'I', 'N', '1'};
static char folder[PATH_MAX], program[PATH_MAX + 32], alive[PATH_MAX + 32];

static int unusable(const char *tmpdir, const char *problem) {
    fprintf(stderr,
            "jobd: TMPDIR (%s) %s; jobd unpacks itself there at each start and runs from there:"
            " point TMPDIR at a writable directory that allows exec (e.g. -e TMPDIR=/data/tmp,"
            " or --tmpfs /tmp:exec)\n",
            tmpdir, problem);
    return 1;
}

static void clean_up(void) {
    if (*program) unlink(program);
    if (*alive) unlink(alive);
    if (*folder) rmdir(folder);
}

static int broken(const char *what) {
    fprintf(stderr, "jobd: %s: %s\n", what, strerror(errno));
    clean_up();
    return 1;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *tmpdir = getenv("TMPDIR");
    if (tmpdir == NULL || *tmpdir == '\0') tmpdir = "/tmp";
    struct stat st;
    struct statvfs fs;
    if (strlen(tmpdir) > PATH_MAX - 32) return unusable("...", "is too long a path");
    if (stat(tmpdir, &st) != 0 || !S_ISDIR(st.st_mode)) return unusable(tmpdir, "is not a directory");
    if (statvfs(tmpdir, &fs) == 0 && (fs.f_flag & ST_RDONLY)) return unusable(tmpdir, "is read-only");
    if (statvfs(tmpdir, &fs) == 0 && (fs.f_flag & ST_NOEXEC)) return unusable(tmpdir, "is mounted noexec");
    if (access(tmpdir, W_OK | X_OK) != 0) return unusable(tmpdir, "is not writable by this user");

    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self < 0) return broken("cannot read its own file (/proc/self/exe; is /proc mounted?)");
    off_t end = lseek(self, 0, SEEK_END);
    unsigned char trailer[16];
    if (end < 16 || pread(self, trailer, 16, end - 16) != 16 || memcmp(trailer + 8, MAGIC, 8) != 0) {
        errno = ENOEXEC;
        return broken("this file is not a whole jobd binary (copied in part?)");
    }
    uint64_t start = 0;
    for (int i = 7; i >= 0; i--) start = (start << 8) | trailer[i];
    off_t at = (off_t)start, left = end - 16 - (off_t)start;

    snprintf(folder, sizeof folder, "%s/jobd-exe-XXXXXX", tmpdir);
    if (mkdtemp(folder) == NULL) {
        *folder = '\0';
        return unusable(tmpdir, strerror(errno));
    }
    /* locked before it has its name, so no other jobd ever sees it unlocked; the descriptor
       is inherited across exec: the started process holds the lock for its whole life */
    char pending[PATH_MAX + 64];
    snprintf(pending, sizeof pending, "%s/.jobd-alive.%d", folder, (int)getpid());
    snprintf(alive, sizeof alive, "%s/.jobd-alive", folder);
    int lock = open(pending, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0 || rename(pending, alive) != 0) {
        unlink(pending);
        return broken("cannot lock its folder in TMPDIR");
    }
    snprintf(program, sizeof program, "%s/jobd", folder);
    int out = open(program, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) return broken("cannot write to TMPDIR");
    while (left > 0) {
        ssize_t copied = sendfile(out, self, &at, (size_t)left);
        if (copied <= 0) {
            if (copied < 0 && (errno == ENOSPC || errno == EDQUOT)) {
                clean_up();
                return unusable(tmpdir, "has no room for jobd (about 45 MB)");
            }
            return broken("cannot write to TMPDIR");
        }
        left -= copied;
    }
    if (close(out) != 0) return broken("cannot write to TMPDIR");
    close(self);
    execv(program, argv);
    return broken("cannot start the program it unpacked");
}
