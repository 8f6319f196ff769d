-- Id blocks of daily increments: one row per generated day, so regenerating a day reuses its ids.
-- Written by ecompipe.generate when it generates an increment.

create table if not exists increment_ids (
    day                date primary key,
    first_customer_id  bigint not null,
    customers          integer not null,
    first_order_id     bigint not null,
    orders             integer not null
);
