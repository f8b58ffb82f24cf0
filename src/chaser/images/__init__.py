"""OCI images: references, and (to come, issue 11) pulling, unpacking and the cache."""
