-- 1. Find available link for specific time
SELECT * FROM find_available_meeting_link('2025-12-01', '14:00', 60);
