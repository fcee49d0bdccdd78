module podlabeler.local/refwebhook

go 1.26
