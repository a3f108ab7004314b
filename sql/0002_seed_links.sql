-- The three links the original system ran with. Spaced creation times keep the
-- allocator's order (created_at, then id) the order they are listed in.
INSERT INTO meeting_links_pool (meeting_link, notes, created_at) VALUES
    ('https://meet.google.com/kcw-ebey-pqu', 'Seed link 1', now() - interval '3 seconds'),
    ('https://meet.google.com/ppt-myeq-puu', 'Seed link 2', now() - interval '2 seconds'),
    ('https://meet.google.com/wyk-nvfk-qkq', 'Seed link 3', now() - interval '1 second')
ON CONFLICT (meeting_link) DO NOTHING;
