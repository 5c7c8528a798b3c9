-- Segment rules compile attribute equality to containment (attributes @> {"key": value}), which
-- this index serves; jsonb_path_ops is the smaller, faster GIN flavour for @>.
CREATE INDEX subscribers_attributes ON subscribers USING gin (attributes jsonb_path_ops);
