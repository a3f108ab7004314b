-- Whether a link is a booking's private space, as of now. VOLATILE on purpose: it takes its
-- own snapshot, so a query that calls assign_link_v1 or claim_space_v1 (which may wait for a
-- booking's lock while another transaction records the space) and then asks about the link
-- they returned sees that link. An EXISTS in the calling query would use the snapshot taken
-- before the wait and call a just-recorded private space a pool link.
CREATE FUNCTION link_is_private_space_v1(p_link_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.id = p_link_id AND l.dedicated_to IS NOT NULL)
$$;
