-- The order statuses ecompipe knows, and which of them bear revenue: the warehouse's one place that says so.
-- The transform models count revenue through this table.
-- A seed, in dbt's sense: its rows are sql/seeds/order_statuses.csv, reference data kept with the code,
-- written into this table whenever ecompipe sets up the schema (ecompipe.seeds).

create table if not exists order_statuses (
    status              text primary key,
    is_revenue_bearing  boolean not null,
    meaning             text not null
);
