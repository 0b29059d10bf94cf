module moe

go 1.26.8
