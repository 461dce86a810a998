"""Wire messages (generated from proto/ by ``make proto``) and their translation to engine types."""
