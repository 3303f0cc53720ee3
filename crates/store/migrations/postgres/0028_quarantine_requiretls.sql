-- A quarantined message sent with REQUIRETLS (RFC 8689) keeps that request when released:
-- the release queues it again with the flag, so it still travels only over verified TLS.
ALTER TABLE quarantine ADD COLUMN require_tls BIGINT NOT NULL DEFAULT 0;
