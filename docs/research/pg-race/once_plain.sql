DELETE FROM ops WHERE id = (SELECT id FROM ops ORDER BY ord FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING kind, a, b \gset
\set b1 2 * :a
\set b2 2 * :a + 1
\if :kind = 1
BEGIN;

INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village, captured_at, hq_received_at, warnings, state, ingested_by)
  VALUES ('a' || :a, 'b1', 'S', 'h', '\x00', 'n', 'k', 'v', 1, 2, '', 'awaiting_blobs', 'w') ON CONFLICT DO NOTHING;
INSERT INTO app_blobs (bus_id, application_id, sha256, kind, size, media_type) VALUES
  ('b1', 'a' || :a, 's' || :b1, 'id_photo', 10, 'image/jpeg'), ('b1', 'a' || :a, 's' || :b2, 'doc', 10, 'application/pdf') ON CONFLICT DO NOTHING;
SELECT pg_sleep(0.002);
UPDATE applications a SET state = 'complete' WHERE a.bus_id = 'b1' AND a.id = 'a' || :a AND a.state = 'awaiting_blobs'
  AND NOT EXISTS (SELECT 1 FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256 AND b.size = ab.size
                  WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND b.sha256 IS NULL);
COMMIT;
\else
BEGIN;

INSERT INTO blobs (sha256, size, path, first_bus, stored_at) VALUES ('s' || :b, 10, 'p', 'b1', 1) ON CONFLICT (sha256) DO NOTHING;
SELECT pg_sleep(0.002);

UPDATE applications a SET state = 'complete' WHERE a.state = 'awaiting_blobs'
  AND EXISTS (SELECT 1 FROM app_blobs ab WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND ab.sha256 = 's' || :b)
  AND NOT EXISTS (SELECT 1 FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256 AND b.size = ab.size
                  WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND b.sha256 IS NULL);
COMMIT;
\endif
