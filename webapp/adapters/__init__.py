"""Outside systems: PostgreSQL, Redis, S3, secrets, and the embedded stand-ins development runs on."""
