-- cohort_retention: of the customers who first bought in a month, how many bought again N months later.
-- Grain: one row per cohort (month of the first revenue-bearing order) and months_since_first (0, 1, ...)
-- up to the month of the last day of daily_sales_summary (the last month of monthly_sales_summary, which
-- groups those days and reads its customers from this table); months with no returning customer are zero-filled.
-- Inputs: order_totals, daily_sales_summary.

with

customer_months as (
    select customer_id, date_trunc('month', order_date::timestamp)::date as active_month
    from order_totals
    where is_revenue_bearing and order_date is not null
    group by 1, 2
),

activity as (
    select customer_id, active_month, min(active_month) over (partition by customer_id) as cohort_month
    from customer_months
),

last_month as (
    select date_trunc('month', max(sale_date)::timestamp)::date as last_month
    from daily_sales_summary
),

active as (
    select cohort_month, active_month, count(*) as active_customers
    from activity
    group by 1, 2
),

cohorts as (
    select cohort_month, active_customers as cohort_size
    from active
    where active_month = cohort_month
),

grid as (
    select cohorts.cohort_month, cohorts.cohort_size, month.active_month::date as active_month,
        month.n - 1 as months_since_first
    from cohorts
    cross join last_month
    -- timestamps without a zone: a month starting at 01:00 (midnight skipped by daylight saving) stays in
    cross join lateral generate_series(
        cohorts.cohort_month::timestamp, last_month.last_month::timestamp, interval '1 month'
    ) with ordinality as month (active_month, n)
),

final as (
    select
        grid.cohort_month,
        grid.months_since_first::int as months_since_first,
        grid.active_month,
        grid.cohort_size,
        coalesce(active.active_customers, 0) as active_customers,
        round(100.0 * coalesce(active.active_customers, 0) / grid.cohort_size, 2) as retention_pct
    from grid
    left join active on active.cohort_month = grid.cohort_month and active.active_month = grid.active_month
)

select * from final
