module localbuild/pause

go 1.26
