-- Each metric's samples per UTC hour, packed (reports::rollup): reports read these instead of
-- every sample of their range. Rewritten from the hour's samples by each transaction that
-- changes them.
CREATE TABLE metric_rollups (
    metric  TEXT NOT NULL,
    -- The hour's first ms.
    hour    BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (metric, hour)
);
