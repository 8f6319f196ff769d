-- monthly_sales_summary: sales per calendar month, with new customers and growth.
-- Grain: one row per month (its first day) from the first to the last order's month, zero-filled.
-- Inputs: daily_sales_summary, order_totals, customer_summary.
--
-- Orders and revenue add up from the days; distinct customers do not, so they are counted from the orders.
-- new_customers counts customers whose first revenue-bearing order falls in the month.
-- revenue_growth_pct compares with the month before; null for the first month and after a month without revenue.

with

daily_sales_summary as (
    select sale_date, total_orders, total_revenue
    from daily_sales_summary
),

order_totals as (
    select customer_id, order_date
    from order_totals
    where is_revenue_bearing and order_date is not null
),

customer_summary as (
    select first_order_date
    from customer_summary
    where first_order_date is not null
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
    select date_trunc('month', order_date::timestamp)::date as month, count(distinct customer_id) as unique_customers
    from order_totals
    group by 1
),

first_orders as (
    select date_trunc('month', first_order_date::timestamp)::date as month, count(*) as new_customers
    from customer_summary
    group by 1
),

final as (
    select
        sales.month,
        sales.total_orders,
        sales.total_revenue,
        coalesce(customers.unique_customers, 0) as unique_customers,
        coalesce(first_orders.new_customers, 0) as new_customers,
        round(sales.total_revenue / nullif(sales.total_orders, 0), 2) as avg_order_value,
        round(
            100 * (sales.total_revenue - lag(sales.total_revenue) over (order by sales.month))
            / nullif(lag(sales.total_revenue) over (order by sales.month), 0),
            2
        ) as revenue_growth_pct
    from sales
    left join customers on customers.month = sales.month
    left join first_orders on first_orders.month = sales.month
)

select * from final
