SELECT count(*) FILTER (WHERE state = 'complete') AS complete,
       count(*) FILTER (WHERE state = 'awaiting_blobs') AS awaiting,
       count(*) FILTER (WHERE state = 'awaiting_blobs' AND NOT EXISTS (
           SELECT 1 FROM app_blobs ab LEFT JOIN blobs b ON b.sha256 = ab.sha256 AND b.size = ab.size
           WHERE ab.bus_id = a.bus_id AND ab.application_id = a.id AND b.sha256 IS NULL)) AS missed_completion,
       (SELECT count(*) FROM blobs) AS blobs
FROM applications a;
