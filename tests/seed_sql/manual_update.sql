-- 2. Update booking with link ID
UPDATE bookings
SET meeting_link_id = 'LINK_ID_FROM_ABOVE'
WHERE id = 'BOOKING_ID';
