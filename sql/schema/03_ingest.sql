-- What ingest keeps besides the core tables.
--   staging.*      every row of the latest load exactly as it arrived, all text, with its file and line;
--   quarantine     rows that broke a hard rule, with their raw values and every reason;
--   ingest_loads   one row per load, with the reconciliation of each file and the data's as-of date;
--   data_as_of     the as-of date of what the warehouse holds, which the marts measure dates against.
-- Staging is UNLOGGED: it is rebuilt by every load and need not survive a server crash.
-- Each load sets _file's default to its file, a constant per row. A function call per row and an uncached
-- line sequence took about two fifths of staging's time.

create schema if not exists staging;

create unlogged table if not exists staging.customers (
    _line        bigint generated always as identity (cache 10000),
    _file        text,
    customer_id  text,
    first_name   text,
    last_name    text,
    email        text,
    phone        text,
    city         text,
    state        text,
    country      text,
    signup_date  text
);

create unlogged table if not exists staging.products (
    _line         bigint generated always as identity (cache 10000),
    _file         text,
    product_id    text,
    product_name  text,
    category      text,
    unit_price    text,
    unit_cost     text
);

create unlogged table if not exists staging.orders (
    _line           bigint generated always as identity (cache 10000),
    _file           text,
    order_id        text,
    customer_id     text,
    order_ts        text,
    status          text,
    payment_method  text
);

create unlogged table if not exists staging.order_items (
    _line       bigint generated always as identity (cache 10000),
    _file       text,
    order_id    text,
    line_no     text,
    product_id  text,
    quantity    text,
    unit_price  text,
    discount    text
);

create table if not exists quarantine (
    source_file  text not null,
    line         bigint not null,  -- the record's line in its file, the header being line 1
    table_name   text not null,
    raw          jsonb not null,   -- the row's values exactly as they arrived, by column
    reasons      text[] not null,
    primary key (source_file, line)
);

create table if not exists ingest_loads (
    load_id      bigint generated always as identity primary key,
    source_dir   text not null,
    mode         text not null,    -- replace (a full load) or upsert (a daily increment)
    started_at   timestamptz not null,
    finished_at  timestamptz not null default clock_timestamp(),
    files        jsonb not null    -- per file: rows read, loaded into core, quarantined, blank lines skipped
);

-- Added after the first release: warehouses created before get them here, empty for their old loads.
alter table ingest_loads
    add column if not exists as_of date,      -- the data's as-of date: nothing is dated after it
    add column if not exists scale numeric,   -- the generator's scale and seed, when generated data
    add column if not exists seed bigint;

-- The data's as-of date: that of the last full load, or of a later increment. An order dated after it is
-- treated as undated (README, Definitions).
create or replace view data_as_of as
select max(as_of) as as_of_date
from ingest_loads
where load_id >= (select max(load_id) from ingest_loads where mode = 'replace');
