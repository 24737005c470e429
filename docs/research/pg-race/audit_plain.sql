BEGIN;
SELECT quote_literal(coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), 'genesis')) AS prev \gset
INSERT INTO audit (at, actor, action, detail, prev_hash, hash) VALUES (1, 'x', 'viewed', '', :prev, md5(:prev || random()::text));
COMMIT;
