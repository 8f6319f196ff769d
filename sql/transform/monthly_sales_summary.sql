-- monthly_sales_summary: sales per calendar month, with new customers and growth.
-- Grain: one row per month (its first day) from the first to the last order's month, zero-filled.
-- Inputs: daily_sales_summary, cohort_retention.
--
-- Orders and revenue add up from the days; distinct customers do not, so they come from the cohorts: each
-- customer belongs to one cohort (the month of their first revenue-bearing order), so the month's distinct
-- customers are the cohorts' active customers in it, and its new customers the size of the cohort it starts.
-- revenue_growth_pct compares with the month before; null for the first month and after a month without revenue.

with

daily_sales_summary as (
    select sale_date, total_orders, total_revenue
    from daily_sales_summary
),

cohort_retention as (
    select active_month, months_since_first, cohort_size, active_customers
    from cohort_retention
),

sales as (
    select
        date_trunc('month', sale_date::timestamp)::date as month,
        sum(total_orders)::bigint as total_orders,
        sum(total_revenue) as total_revenue
    from daily_sales_summary
    group by 1
),

customers as (
    select
        active_month as month,
        sum(active_customers)::bigint as unique_customers,
        sum(cohort_size) filter (where months_since_first = 0)::bigint as new_customers
    from cohort_retention
    group by 1
),

final as (
    select
        sales.month,
        sales.total_orders,
        sales.total_revenue,
        coalesce(customers.unique_customers, 0) as unique_customers,
        coalesce(customers.new_customers, 0) as new_customers,
        round(sales.total_revenue / nullif(sales.total_orders, 0), 2) as avg_order_value,
        round(
            100 * (sales.total_revenue - lag(sales.total_revenue) over (order by sales.month))
            / nullif(lag(sales.total_revenue) over (order by sales.month), 0),
            2
        ) as revenue_growth_pct
    from sales
    left join customers on customers.month = sales.month
)

select * from final
