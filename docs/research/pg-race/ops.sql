DROP TABLE IF EXISTS ops;
CREATE TABLE ops (id serial PRIMARY KEY, ord double precision, kind int, a int, b int);
INSERT INTO ops (ord, kind, a, b) SELECT a * 3 + random() * 30, 1, a, 0 FROM generate_series(0, 999) a;
INSERT INTO ops (ord, kind, a, b) SELECT a * 3 + random() * 30, 2, a, 2 * a FROM generate_series(0, 999) a;
INSERT INTO ops (ord, kind, a, b) SELECT a * 3 + random() * 30, 2, a, 2 * a + 1 FROM generate_series(0, 999) a;
CREATE INDEX ON ops (ord);
TRUNCATE blobs, app_blobs; DELETE FROM applications;
