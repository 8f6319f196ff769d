-- rfm_segments: the segment mix, and what each segment's scores and customers look like.
-- Grain: one row per RFM segment present in customer_summary (including 'no orders').
-- Inputs: customer_summary (which scores customers and names their segments).

with

customer_summary as (
    select customer_id, total_orders, total_spent, days_since_last_order,
           recency_score, frequency_score, monetary_score, rfm_segment
    from customer_summary
),

segments as (
    select
        rfm_segment,
        count(*) as customers,
        min(recency_score) as min_recency_score,
        max(recency_score) as max_recency_score,
        min(frequency_score) as min_frequency_score,
        max(frequency_score) as max_frequency_score,
        round(avg(days_since_last_order), 1) as avg_days_since_last_order,
        round(avg(total_orders), 2) as avg_orders,
        round(avg(total_spent), 2) as avg_spent,
        sum(total_spent) as total_spent
    from customer_summary
    group by rfm_segment
),

final as (
    select
        rfm_segment,
        customers,
        round(100.0 * customers / sum(customers) over (), 2) as customers_pct,
        min_recency_score,
        max_recency_score,
        min_frequency_score,
        max_frequency_score,
        avg_days_since_last_order,
        avg_orders,
        avg_spent,
        total_spent,
        round(100 * total_spent / nullif(sum(total_spent) over (), 0), 2) as revenue_pct
    from segments
)

select * from final
