"""Quality flags a user can filter on: small pure checks of captions, geometry and views, and the filters on them."""
