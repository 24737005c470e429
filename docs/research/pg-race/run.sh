#!/bin/bash
# $1 = mode: plain | locked | serializable ; scenario S1: two blobs of r1 committed by two workers
export PGHOST=127.0.0.1 PGPORT=54329 PGUSER=keliling
DB=keliling_t1
mode=$1
psql -X -q -d $DB -f setup.sql
COMPLETE=$(sed 's/APP/r1/' complete.sql.in)
begin="BEGIN;"; [ "$mode" = serializable ] && begin="BEGIN ISOLATION LEVEL SERIALIZABLE;"
lockx=""; locky=""; lockapp=""
if [ "$mode" = locked ]; then
  lockx="SELECT pg_advisory_xact_lock(1001);"; locky="SELECT pg_advisory_xact_lock(1002);"
  lockapp="SELECT 1 FROM applications WHERE bus_id='b1' AND id='r1' FOR UPDATE;"
fi
# worker A: blob X; inserts at t=0, checks at t=1.0, commits
(psql -X -q -d $DB -v ON_ERROR_STOP=1 <<SQL
$begin $lockx
INSERT INTO blobs VALUES ('XXXX',10,'p','b1',1) ON CONFLICT DO NOTHING;
SELECT pg_sleep(1.0) \g /dev/null
$lockapp
$COMPLETE
COMMIT;
SQL
echo "A rc=$?") > a.out 2>&1 &
# worker B: blob Y; inserts at t=0.3, checks at t=0.5, commits at t=1.5
(psql -X -q -d $DB -v ON_ERROR_STOP=1 <<SQL
SELECT pg_sleep(0.3) \g /dev/null
$begin $locky
INSERT INTO blobs VALUES ('YYYY',20,'p','b1',1) ON CONFLICT DO NOTHING;
SELECT pg_sleep(0.2) \g /dev/null
$lockapp
$COMPLETE
SELECT pg_sleep(1.0) \g /dev/null
COMMIT;
SQL
echo "B rc=$?") > b.out 2>&1 &
wait
cat a.out b.out | grep -v '^$'
psql -X -q -d $DB -At -c "SELECT '$mode: r1 is ' || state || ', blobs stored: ' || (SELECT count(*) FROM blobs) FROM applications WHERE id='r1'"
