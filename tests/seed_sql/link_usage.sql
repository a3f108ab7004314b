SELECT
  ml.meeting_link,
  ml.notes,
  COUNT(b.id) as total_bookings,
  COUNT(b.id) FILTER (WHERE b.scheduled_date >= CURRENT_DATE) as upcoming_bookings
FROM meeting_links_pool ml
LEFT JOIN bookings b ON b.meeting_link_id = ml.id AND b.payment_status = 'paid'
GROUP BY ml.id, ml.meeting_link, ml.notes
ORDER BY total_bookings DESC;
