-- The networks a tenant's own mail servers send outbound mail from. A client in one of
-- them, with an envelope sender in one of the tenant's domains, may relay to any address.
-- A network is an IP prefix in canonical text form (`192.0.2.0/24`, `2001:db8::/48`).
CREATE TABLE outbound_networks (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    network    TEXT NOT NULL,
    added_by   TEXT NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, network)
);
