#!/bin/bash
# Scenario S2: worker A ingests record r2 (needs blob X) while worker B commits blob X.
export PGHOST=127.0.0.1 PGPORT=54329 PGUSER=keliling
DB=keliling_t1; mode=$1
psql -X -q -d $DB -f setup.sql
psql -X -q -d $DB -c "DELETE FROM app_blobs WHERE sha256='YYYY'"   # r1 waits for X only
lock=""; [ "$mode" = locked ] && lock="SELECT pg_advisory_xact_lock(1001) \g /dev/null"
COMPLETE2=$(sed 's/APP/r2/' complete.sql.in)
(psql -X -q -d $DB -v ON_ERROR_STOP=1 <<SQL
BEGIN;
$lock
INSERT INTO blobs VALUES ('XXXX',10,'p','b1',1) ON CONFLICT DO NOTHING;
SELECT pg_sleep(0.2) \g /dev/null
UPDATE applications a SET state = 'complete' WHERE a.state = 'awaiting_blobs'
  AND EXISTS (SELECT 1 FROM app_blobs ab WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND ab.sha256 = 'XXXX')
  AND NOT EXISTS (SELECT 1 FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256 AND b.size = ab.size
                  WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND b.sha256 IS NULL);
SELECT pg_sleep(0.8) \g /dev/null
COMMIT;
SQL
echo "B rc=$?") > b.out 2>&1 &
(psql -X -q -d $DB -v ON_ERROR_STOP=1 <<SQL
SELECT pg_sleep(0.1) \g /dev/null
BEGIN;
$lock
INSERT INTO applications (id, bus_id, service, content_hash, record, applicant_name, nik, village, captured_at, hq_received_at, warnings, state, ingested_by)
VALUES ('r2','b1','SIM','h','\x00','Budi','5371015203900002','Desa',1,2,'','awaiting_blobs','hq-2');
INSERT INTO app_blobs (bus_id, application_id, sha256, kind, size, media_type) VALUES ('b1','r2','XXXX','id_photo',10,'image/jpeg') ON CONFLICT DO NOTHING;
SELECT pg_sleep(0.3) \g /dev/null
$COMPLETE2
COMMIT;
SQL
echo "A rc=$?") > a.out 2>&1 &
wait; cat a.out b.out | grep -v '^$'
psql -X -q -d $DB -At -c "SELECT '$mode: ' || string_agg(id || ' ' || state, ', ' ORDER BY id) FROM applications"
