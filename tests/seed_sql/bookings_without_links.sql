-- These need manual assignment
SELECT
  b.id,
  b.order_id,
  b.scheduled_date,
  b.scheduled_time,
  b.payment_status,
  b.created_at
FROM bookings b
WHERE b.payment_status = 'paid'
AND b.meeting_link_id IS NULL
ORDER BY b.created_at DESC;
