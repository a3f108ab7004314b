SELECT
  b.id,
  b.order_id,
  b.scheduled_date,
  b.scheduled_time,
  b.payment_status,
  ml.meeting_link
FROM bookings b
LEFT JOIN meeting_links_pool ml ON ml.id = b.meeting_link_id
WHERE b.payment_status = 'paid'
ORDER BY b.scheduled_date DESC, b.scheduled_time DESC
LIMIT 10;
