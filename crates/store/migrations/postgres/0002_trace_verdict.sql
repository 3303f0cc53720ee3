-- The inspection verdict of each traced message.
ALTER TABLE trace_messages ADD COLUMN verdict TEXT;
ALTER TABLE trace_messages ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE trace_messages ADD COLUMN symbols TEXT NOT NULL DEFAULT '';
