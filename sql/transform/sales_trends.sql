-- sales_trends: daily revenue with its 7-day rolling sum, week over week and month over month.
-- Grain: one row per day of daily_sales_summary.
-- Inputs: daily_sales_summary (zero-filled, so N rows back is N days back).
--
-- wow_pct compares the trailing 7 days with the 7 days before them; mom_pct compares the trailing 28 days
-- with the 28 before (four whole weeks, so both windows hold the same weekdays). Null until there is a
-- full previous window, or when it had no revenue.

with

daily_sales_summary as (
    select sale_date, total_orders, total_revenue
    from daily_sales_summary
),

rolling as (
    select
        sale_date,
        total_orders,
        total_revenue,
        sum(total_revenue) over (order by sale_date rows 6 preceding) as revenue_7d,
        sum(total_revenue) over (order by sale_date rows between 13 preceding and 7 preceding) as revenue_prev_7d,
        sum(total_revenue) over (order by sale_date rows 27 preceding) as revenue_28d,
        sum(total_revenue) over (order by sale_date rows between 55 preceding and 28 preceding) as revenue_prev_28d,
        row_number() over (order by sale_date) as day_number
    from daily_sales_summary
),

final as (
    select
        sale_date,
        total_orders,
        total_revenue,
        case when day_number >= 7 then revenue_7d end as revenue_7d,
        case when day_number >= 14 then round(100 * (revenue_7d - revenue_prev_7d) / nullif(revenue_prev_7d, 0), 2) end as wow_pct,
        case when day_number >= 28 then revenue_28d end as revenue_28d,
        case when day_number >= 56 then round(100 * (revenue_28d - revenue_prev_28d) / nullif(revenue_prev_28d, 0), 2) end as mom_pct
    from rolling
)

select * from final
