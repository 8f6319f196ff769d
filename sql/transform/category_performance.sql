-- category_performance: sales, margin and share of revenue by product category.
-- Grain: one row per category.
-- Inputs: product_summary.

with

product_summary as (
    select product_id, product_name, category, units_sold, total_revenue, total_cost, revenue_rank
    from product_summary
),

categories as (
    select
        category,
        count(*) as products,
        count(*) filter (where units_sold > 0) as products_sold,
        sum(units_sold) as units_sold,
        sum(total_revenue) as total_revenue,
        sum(total_cost) as total_cost,
        (array_agg(product_name order by revenue_rank, product_id) filter (where units_sold > 0))[1] as best_product
    from product_summary
    group by category
),

final as (
    select
        category,
        products,
        products_sold,
        units_sold,
        total_revenue,
        total_cost,
        total_revenue - total_cost as total_margin,
        round(100 * (total_revenue - total_cost) / nullif(total_revenue, 0), 2) as margin_pct,
        round(100 * total_revenue / nullif(sum(total_revenue) over (), 0), 2) as revenue_share_pct,
        rank() over (order by total_revenue desc) as revenue_rank,
        best_product
    from categories
)

select * from final
