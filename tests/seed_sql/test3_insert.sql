-- Create 2 bookings at SAME time
INSERT INTO bookings (
  user_id, expert_id, session_type,
  scheduled_date, scheduled_time, duration,
  price, payment_status, status, order_id
) VALUES
  ('user-1', 'expert-1', 'Konsultasi', '2025-12-01', '10:00', 60, 100000, 'paid', 'confirmed', 'CONFLICT-1-' || gen_random_uuid()),
  ('user-2', 'expert-2', 'Konsultasi', '2025-12-01', '10:00', 60, 100000, 'paid', 'confirmed', 'CONFLICT-2-' || gen_random_uuid())
RETURNING id, order_id;
