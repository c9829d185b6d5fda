"""Head roles of CLIP ViTs as data, and the attention masks they define. No training code here.

    from head_roles import load_roles, role_mask
    roles = load_roles("ViT-B/16")                 # or a path to a roles JSON file
    roles.heads_for_attribute(10, "color")         # -> [1]
    mask = role_mask(roles.layer(10), roles.core_attributes, n_orig=197)   # [12, 202, 202]
"""
from .masks import ABLATIONS, ATTR_INTERACTIONS, ablate, role_mask, role_masks
from .roles import (
    CONCEPTS,
    ROLES,
    HeadRole,
    HeadRoles,
    RolesFileError,
    RolesMismatch,
    attribute_set,
    default_roles_path,
    load_roles,
    parse_roles,
)

__all__ = [
    "ABLATIONS", "ATTR_INTERACTIONS", "CONCEPTS", "ROLES", "HeadRole", "HeadRoles", "RolesFileError", "RolesMismatch",
    "ablate", "attribute_set", "default_roles_path", "load_roles", "parse_roles", "role_mask", "role_masks",
]
