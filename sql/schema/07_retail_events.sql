-- The retail calendar: days whose sales follow known events, not chance. Public knowledge, kept as a seed
-- (sql/seeds/retail_events.csv): Black Friday (the day after the US Thanksgiving, the fourth Thursday of
-- November), its weekend, Cyber Monday, the Christmas rush (10 to 23 December) and the January slump (2 to
-- 31 January), for 2020 to 2035. The generator shapes its volumes on it, and the daily anomaly detector
-- expects these days to differ.

create table if not exists retail_events (
    event_id   text primary key,
    event      text not null,
    first_day  date not null,
    last_day   date not null
);
