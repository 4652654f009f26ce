"""The provider staff's pages: partners, acting for a partner, orders, inventory, approvals."""
