-- The order statuses ecompipe knows, and which of them bear revenue: the warehouse's one place that says so.
-- The transform models count revenue through this table.
-- A seed, in dbt's sense: reference data kept with the code, rewritten whenever ecompipe sets up the schema.

create table if not exists order_statuses (
    status              text primary key,
    is_revenue_bearing  boolean not null,
    meaning             text not null
);

insert into order_statuses (status, is_revenue_bearing, meaning) values
    ('placed', true, 'ordered, not yet shipped'),
    ('shipped', true, 'on its way'),
    ('delivered', true, 'received by the customer'),
    ('cancelled', false, 'cancelled before delivery'),
    ('returned', false, 'sent back after delivery')
on conflict (status) do update
    set is_revenue_bearing = excluded.is_revenue_bearing, meaning = excluded.meaning
    where (order_statuses.is_revenue_bearing, order_statuses.meaning)
        is distinct from (excluded.is_revenue_bearing, excluded.meaning);
