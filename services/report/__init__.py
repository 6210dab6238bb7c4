"""`fengqiao report`: statistics of a period, area or department from dispatch's and follow-up's stores."""
