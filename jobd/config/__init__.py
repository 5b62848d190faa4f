"""Settings and their parsers: the option tables and Config, sizes and durations, service
declarations. Shared by every layer; imports only errors and models."""
