-- daily_sales_summary: sales per calendar day.
-- Grain: one row per day from the first to the last order date (any status), days without sales zero-filled
-- (avg_order_value is null on them: there is no order to average).
-- Inputs: order_totals.

with

-- not materialized: read twice, and inlined each read can run in parallel instead of spooling 5M rows
order_totals as not materialized (
    select customer_id, order_date, is_revenue_bearing, units, revenue
    from order_totals
    where order_date is not null
),

days as (
    select
        order_date,
        count(*) filter (where is_revenue_bearing) as total_orders,
        sum(revenue) filter (where is_revenue_bearing) as total_revenue,
        sum(units) filter (where is_revenue_bearing)::bigint as units_sold
    from order_totals
    group by order_date
),

-- A distinct count cannot be computed in parallel: apart, it does not hold the sums back.
customers as (
    select order_date, count(distinct customer_id) as unique_customers
    from order_totals
    where is_revenue_bearing
    group by order_date
),

calendar as (
    select day::date as sale_date
    -- timestamps without a zone: with a zone, a day starting at 01:00 (midnight skipped by daylight saving)
    -- would end the series a day early
    from generate_series(
        (select min(order_date) from days)::timestamp, (select max(order_date) from days)::timestamp, interval '1 day'
    ) as day
),

final as (
    select
        calendar.sale_date,
        coalesce(days.total_orders, 0) as total_orders,
        coalesce(days.total_revenue, 0) as total_revenue,
        coalesce(customers.unique_customers, 0) as unique_customers,
        round(days.total_revenue / nullif(days.total_orders, 0), 2) as avg_order_value,
        coalesce(days.units_sold, 0) as units_sold
    from calendar
    left join days on days.order_date = calendar.sale_date
    left join customers on customers.order_date = calendar.sale_date
)

select * from final
