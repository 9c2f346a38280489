"""Database operations of the stack: backups (pgBackRest) and their agent."""
