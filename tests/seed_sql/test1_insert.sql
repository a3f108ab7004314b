-- Create a test booking
INSERT INTO bookings (
  user_id, expert_id, session_type,
  scheduled_date, scheduled_time, duration,
  price, payment_status, status, order_id
) VALUES (
  'test-user-1',
  'test-expert-1',
  'Konsultasi Karir',
  '2025-12-01',
  '14:00',
  60,
  100000,
  'paid',
  'confirmed',
  'TEST-' || gen_random_uuid()::text
)
RETURNING id, order_id;
