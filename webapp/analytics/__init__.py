"""What shoppers search for and pick: the search log, click events, rollups and demand gaps."""
