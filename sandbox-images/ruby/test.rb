puts "OK"
