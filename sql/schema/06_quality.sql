-- What 04_validate records for every run, appended: each expectation's result, and the scores.
-- A suite validated again in the same run (a retried task) replaces its own rows; nothing else is touched.

create table if not exists quality_results (
    run_id              text not null,
    suite               text not null,       -- expectations/<suite>.json, named after the table it checks
    expectation         text not null,       -- Great Expectations' type
    column_name         text,                -- null for a rule over whole rows
    dimension           text not null,       -- completeness, validity, consistency or uniqueness
    severity            text not null,       -- critical or warning
    description         text not null,       -- the rule in one sentence
    success             boolean not null,
    element_count       bigint not null,     -- the values the rule checked
    unexpected_count    bigint not null,     -- of them, those that broke it
    unexpected_percent  numeric not null,
    sample              jsonb not null,      -- up to 20 unexpected values, with their rows' keys
    error               text,                -- the rule could not be evaluated (bad SQL, a missing column)
    validated_at        timestamptz not null default clock_timestamp()
);
create index if not exists quality_results_run on quality_results (run_id, suite);

create table if not exists quality_scores (
    run_id         text not null,
    dimension      text not null,
    score          numeric not null,  -- % of the values checked by the dimension's rules that pass them
    overall_score  numeric not null,  -- the mean of the four dimensions' scores
    grade          text not null,     -- A >= 95, B >= 90, C >= 80, D >= 70, else F
    scored_at      timestamptz not null default clock_timestamp(),
    primary key (run_id, dimension)
);
