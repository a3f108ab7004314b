SELECT * FROM meeting_links_pool ORDER BY created_at;
