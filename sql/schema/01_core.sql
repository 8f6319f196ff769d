-- Core tables: what ingest has checked and trusts. Keys are enforced here; every other rule (required
-- fields, domains, plausible values) is for the validation stage to report, so such rows still load.
-- Idempotent: run on every connection set-up by ecompipe.warehouse.apply_schema.

create table if not exists customers (
    customer_id  bigint primary key,
    first_name   text,
    last_name    text,
    email        text,
    phone        text,
    city         text,
    state        text,
    country      text,
    signup_date  date
);

create table if not exists products (
    product_id    bigint primary key,
    product_name  text,
    category      text,
    unit_price    numeric(12, 2),
    unit_cost     numeric(12, 2)
);

create table if not exists orders (
    order_id        bigint primary key,
    customer_id     bigint not null references customers (customer_id),
    order_ts        timestamptz,
    status          text,  -- placed, shipped, delivered, cancelled or returned: checked by validation
    payment_method  text
);

create table if not exists order_items (
    order_id    bigint not null references orders (order_id),
    line_no     integer not null,
    product_id  bigint not null references products (product_id),
    quantity    integer,
    unit_price  numeric(12, 2),
    discount    numeric(12, 2),
    primary key (order_id, line_no)
);
