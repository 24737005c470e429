TRUNCATE blobs, app_blobs;
DELETE FROM applications;
INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village, captured_at, hq_received_at, warnings, state, ingested_by)
VALUES ('r1','b1','SIM','h','\x00','Siti','5371015203900001','Desa',1,2,'','awaiting_blobs','hq-1');
INSERT INTO app_blobs (bus_id, application_id, sha256, kind, size, media_type) VALUES
 ('b1','r1','XXXX','id_photo',10,'image/jpeg'), ('b1','r1','YYYY','doc:kk',20,'application/pdf');
