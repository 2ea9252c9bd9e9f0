module github.com/predictd/predictd

go 1.26
