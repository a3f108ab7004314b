INSERT INTO meeting_links_pool (meeting_link, notes)
VALUES
  ('https://meet.google.com/new-link-1', 'Expansion - Dec 2025'),
  ('https://meet.google.com/new-link-2', 'Expansion - Dec 2025');
