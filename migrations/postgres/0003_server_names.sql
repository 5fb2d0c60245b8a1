-- Write-side state of the commands: reservations that make a server name unique among live servers.
-- Written in the same transaction as the ServerRegistered append, deleted with ServerDeregistered.
CREATE SCHEMA IF NOT EXISTS cmd;

CREATE TABLE cmd.server_names (
    name        text        PRIMARY KEY,
    server_id   uuid        NOT NULL UNIQUE,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
