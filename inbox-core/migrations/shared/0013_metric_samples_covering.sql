-- Reports read the samples of a range by metric and end time: an index holding every column
-- they read turns that into one sequential range scan instead of a table lookup per sample
-- (samples are stored in conversation order, scattered across the range's pages).
CREATE INDEX metric_samples_report
    ON metric_samples (metric, ended_at, business_s, calendar_s, channel_id, agent_id, sla_met);
DROP INDEX metric_samples_by_time;
