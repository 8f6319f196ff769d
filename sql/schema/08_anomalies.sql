-- What 05_anomalies records for every run, appended: each flagged order or day, and each method's record
-- against the defects planted in generated data. A run detecting again replaces its own rows.

create table if not exists anomalies (
    run_id     text not null,
    kind       text not null,     -- order_amount or daily_revenue
    key        text not null,     -- the order's id, or the day
    metric     text not null,     -- what was measured
    value      numeric,           -- its value
    expected   numeric,           -- what the method expected
    score      numeric not null,  -- how far from it, in the method's robust units
    method     text not null,
    threshold  numeric not null,  -- the score beyond which the method flags
    reason     text not null,     -- in words
    detected_at timestamptz not null default clock_timestamp()
);
create index if not exists anomalies_run on anomalies (run_id, kind);

create table if not exists anomaly_checks (
    run_id     text not null,
    kind       text not null,
    method     text not null,
    flagged    integer not null,
    planted    integer,           -- null: no ground truth (the data was not generated)
    caught     integer,
    precision  numeric,
    recall     numeric,
    primary key (run_id, kind, method)
);
