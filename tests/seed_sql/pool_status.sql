SELECT
  COUNT(*) as total_links,
  COUNT(*) FILTER (WHERE is_available = true) as available_links
FROM meeting_links_pool;
